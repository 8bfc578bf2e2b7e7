"""Chords from a melody alone: learned harmonisers against the rule and the pianist.

    .venv/bin/python results/harmonisation_validation.py

Fits three harmonisers (``pianoacc_utils.harmony.fitting``: an HMM, softmax regression
and a one-hidden-layer network, the last two as emissions of the same Viterbi decoder)
on the whole songs of POP909's training split, tunes each one's decoding (emission
scale, prior division) on the validation split, and judges on whole songs of the
validation split (for choosing) and of the test split (for the report): the annotated
chords (``pianist``), today's rule (``harmony.estimate_chords``) and each harmoniser,
with the six metrics of Yeh et al. (``evaluation.harmonisation``) and the shares of
annotated beats with the same root and third and with exactly the same chord. Writes
results/harmonisation_validation.json and .md, and the parameters of the harmoniser
with the best median root-and-third agreement on validation to
pretrained/harmony/harmoniser.npz. Songs (and their estimated keys) are cached under
``cache_dir()/harmonisation``.
"""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path

import numpy as np

from pianoacc_utils import harmony
from pianoacc_utils.common import cache_dir, project_root, write_atomic, write_json
from pianoacc_utils.data import load_song, song_ids, split_songs
from pianoacc_utils.evaluation.harmonisation import bar_line_changes, harmonisation_metrics
from pianoacc_utils.harmony import fitting, learned

DECIDES_ON = "validation"
"""The split this script chooses on (the harmoniser's decoding; test is only reported), ``None``
where it chooses nothing; ``tests/test_project.py`` checks that no script chooses on the test
split."""

OUT = Path("results/harmonisation_validation")
KINDS = ("hmm", "softmax", "mlp")
TRAINING = {
    "hmm": {},
    "softmax": {"epochs": 4},
    "mlp": {"hidden": 256, "epochs": 8, "weight_decay": 3e-4},
}
"""Classifier settings (``fitting.fit_classifier``, its defaults otherwise)."""
GRID = {
    "hmm": [(scale, 0.0) for scale in (0.25, 0.5, 1.0)],
    "softmax": [(scale, weight) for scale in (1.0, 2.0, 3.0) for weight in (0.0, 0.3)],
    "mlp": [(scale, weight) for scale in (1.0, 2.0, 3.0) for weight in (0.0, 0.3)],
}
"""Decoding settings tried on validation: (emission scale, prior weight)."""
COLUMNS = ("root_third", "exact", "bar_changes", "ctnctr", "pcs", "mctd", "che", "cc", "ctd")
SYSTEMS = ("pianist", "rule") + KINDS
CHECK_SONGS = 6
"""Validation songs whose root-and-third agreement under the saved parameters file (keys
estimated as a user's melody gets them) the report keeps, so that a test can tell the
committed file from another fit (tests/harmony/test_harmonisation.py)."""
started = time.time()


def log(message: str) -> None:
    print(f"[{time.time() - started:6.0f} s] {message}", flush=True)


def load_songs() -> dict:
    """Every song's melody, bars, chords and estimated key, read once and cached."""
    path = cache_dir() / "harmonisation" / "pop909_songs_keys.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    splits = split_songs(song_ids())
    songs = {}
    for ids in splits.values():
        for song_id in ids:
            song = load_song(song_id)
            songs[song_id] = {
                "example": fitting.HarmonyExample(
                    song.melody,
                    [int(b) for b in song.grid.bar_starts],
                    int(song.grid.num_steps),
                    song.chords,
                ),
                "tonic": learned.melody_tonic(song.melody),
                "annotated_tonic": learned.key_tonic(song.key),
            }
    stored = {"splits": splits, "songs": songs}
    write_atomic(path, pickle.dumps(stored))
    return stored


def key_check(split: str, parameters: dict) -> dict:
    """The saved harmoniser's root-and-third agreement on a split's songs with the key
    estimated from the melody and with the annotated key, and how often the two agree."""
    estimated, annotated, same = [], [], []
    for song_id in stored["splits"][split]:
        song = stored["songs"][song_id]
        if song["annotated_tonic"] is None:
            continue
        example = song["example"]
        for tonic, values in ((song["tonic"], estimated), (song["annotated_tonic"], annotated)):
            chords = learned.harmonise(
                example.melody, example.bar_starts, example.num_steps, parameters, tonic
            )
            values.append(harmony.beat_agreement(chords, example.chords, example.num_steps))
        same.append(song["tonic"][0] == song["annotated_tonic"][0])
    return {
        "songs": len(same),
        "same_tonic_share": float(np.mean(same)),
        "estimated_key": summary(estimated),
        "annotated_key": summary(annotated),
    }


def chords_of(system: str, example: fitting.HarmonyExample, tonic, parameters) -> list:
    if system == "pianist":
        return list(example.chords)
    if system == "rule":
        return harmony.estimate_chords(example.melody, example.bar_starts, example.num_steps)
    return learned.harmonise(
        example.melody, example.bar_starts, example.num_steps, parameters[system], tonic
    )


def summary(values: list[float]) -> dict[str, float]:
    array = np.array(values, float)
    array = array[np.isfinite(array)]
    q25, median, q75 = np.percentile(array, [25, 50, 75])
    return {
        "median": float(median),
        "q25": float(q25),
        "q75": float(q75),
        "mean": float(array.mean()),
        "songs": int(len(array)),
    }


def evaluate(split: str, systems: tuple[str, ...], parameters: dict) -> dict:
    rows = {system: {column: [] for column in COLUMNS} for system in systems}
    for song_id in stored["splits"][split]:
        song = stored["songs"][song_id]
        example = song["example"]
        for system in systems:
            chords = chords_of(system, example, song["tonic"], parameters)
            values = harmonisation_metrics(
                example.melody, chords, example.num_steps, example.chords
            )
            values["bar_changes"] = bar_line_changes(chords, example.bar_starts, example.num_steps)
            for column in COLUMNS:
                rows[system][column].append(values[column])
    return {
        system: {column: summary(values) for column, values in columns.items()}
        for system, columns in rows.items()
    }


def root_third(split: str, parameters: dict) -> float:
    """Median share of beats with the annotation's root and third over a split's songs."""
    values = []
    for song_id in stored["splits"][split]:
        example, prepared = stored["songs"][song_id]["example"], prepared_melodies[song_id]
        chords = (
            []
            if prepared is None
            else learned.decode(
                prepared,
                learned.emission_scores(parameters, prepared.features, prepared.counts),
                parameters,
            )
        )
        values.append(harmony.beat_agreement(chords, example.chords, example.num_steps))
    return float(np.nanmedian(values))


def hedge_frontier(split: str, parameters: dict, sizes: tuple[int, ...] = (3, 2, 1)) -> dict:
    """How much of what an accompaniment plays could lie in the annotated chord if it
    played only the ``k`` pitch classes of each beat's decoded chord that the harmoniser
    is surest of (its posterior that the pitch class is in the chord). Per song, the mean
    over beats with an annotated chord and a sounding melody of the share of those ``k``
    pitch classes in the annotated chord; summarised over the split's songs."""
    qualities = [str(q) for q in parameters["qualities"]]
    states = len(qualities) * 12
    shares: dict[int, list[float]] = {k: [] for k in sizes}
    for song_id in stored["splits"][split]:
        song = stored["songs"][song_id]
        example = song["example"]
        prepared = learned.prepare_melody(*example[:3], song["tonic"])
        if prepared is None:
            continue
        member = np.zeros((states, 12), bool)
        for state in range(states):
            tones, _ = harmony.chord_tones(learned.state_label(state, prepared.tonic, qualities))
            member[state, sorted(tones)] = True
        scores = learned.emission_scores(parameters, prepared.features, prepared.counts)
        certainty = learned.state_posteriors(prepared, scores, parameters) @ member
        path = learned.decode_path(prepared, scores, parameters)
        starts = np.array([c.start for c in example.chords])
        values: dict[int, list[float]] = {k: [] for k in sizes}
        for f, (start, end) in enumerate(prepared.frames.bounds):
            if prepared.frames.silent_bar[f]:
                continue
            middle = (start + end) / 2
            index = int(np.searchsorted(starts, middle, side="right")) - 1
            annotated = None
            if index >= 0 and example.chords[index].end > middle:
                annotated = harmony.chord_tones(example.chords[index].label)
            if not annotated:
                continue
            tones = np.flatnonzero(member[path[f]])
            surest = tones[np.argsort(-certainty[f, tones], kind="stable")]
            for k in sizes:
                values[k].append(float(np.isin(surest[:k], sorted(annotated[0])).mean()))
        for k in sizes:
            if values[k]:
                shares[k].append(float(np.mean(values[k])))
    return {str(k): summary(v) for k, v in shares.items()}


def stay_shares(data: fitting.TrainingData) -> dict[str, float]:
    """Share of consecutive annotated frames of a song that keep their chord, by the
    later frame's place in the bar."""
    same_song = (data.song[1:] == data.song[:-1]) & (data.states[1:] >= 0) & (data.states[:-1] >= 0)
    held = data.states[1:] == data.states[:-1]
    return {
        place: float(held[same_song & (data.position[1:] == p)].mean())
        for p, place in enumerate(learned.POSITIONS)
    }


stored = load_songs()
train = [stored["songs"][i] for i in stored["splits"]["train"]]
log(f"songs: {', '.join(f'{k} {len(v)}' for k, v in stored['splits'].items())}")
examples = [song["example"] for song in train]
qualities = fitting.choose_vocabulary(examples)
beats = fitting.quality_beats(examples)
data = fitting.training_data(examples, qualities, [song["tonic"] for song in train])
prepared_melodies = {
    song_id: learned.prepare_melody(
        *stored["songs"][song_id]["example"][:3], stored["songs"][song_id]["tonic"]
    )
    for song_id in stored["splits"]["validation"]
}
log(f"vocabulary {qualities}; {len(data.states)} training frames")

parameters, tuning = {}, {}
for kind in KINDS:
    fitted = fitting.fit_harmoniser(data, qualities, kind, **TRAINING[kind])
    scores = {}
    for scale, weight in GRID[kind]:
        fitted["scale"], fitted["prior_weight"] = np.array(scale), np.array(weight)
        scores[(scale, weight)] = root_third("validation", fitted)
        log(
            f"{kind} scale {scale} prior weight {weight}: validation root and third {scores[(scale, weight)]:.4f}"
        )
    best = max(scores, key=scores.get)
    fitted["scale"], fitted["prior_weight"] = np.array(best[0]), np.array(best[1])
    parameters[kind] = fitted
    tuning[kind] = {"grid": [[s, w, v] for (s, w), v in scores.items()], "chosen": list(best)}

results = {}
for split in ("validation", "test"):
    results[split] = evaluate(split, SYSTEMS, parameters)
    log(f"{split} evaluated")
ranking = sorted(
    KINDS, key=lambda k: results["validation"][k]["root_third"]["median"], reverse=True
)
winner, runner_up = ranking[0], ranking[1]
margin = (
    results["validation"][winner]["root_third"]["median"]
    - results["validation"][runner_up]["root_third"]["median"]
)
parameter_file = project_root() / learned.PARAMETERS_FILE
fitting.save_parameters(parameter_file, parameters[winner])
log(f"winner {winner} by {margin:.4f} over {runner_up}; saved {parameter_file}")
saved = learned.read_parameters(parameter_file)
check_songs = stored["splits"]["validation"][:CHECK_SONGS]
shipped_check = {
    "songs": list(check_songs),
    "root_third": [
        harmony.beat_agreement(
            chords_of(winner, stored["songs"][i]["example"], None, {winner: saved}),
            stored["songs"][i]["example"].chords,
            stored["songs"][i]["example"].num_steps,
        )
        for i in check_songs
    ],
}

keys = {split: key_check(split, saved) for split in ("validation", "test")}
log("key check done")
hedges = {split: hedge_frontier(split, saved) for split in ("validation", "test")}
log("hedge frontier done")

total_beats = sum(beats.values())
report = {
    "command": "python results/harmonisation_validation.py",
    "vocabulary": list(qualities),
    "vocabulary_coverage": fitting.VOCABULARY_COVERAGE,
    "quality_beat_shares": {q: b / total_beats for q, b in beats.items()},
    "training_frames": int(len(data.states)),
    "training_chord_held_share_by_place": stay_shares(data),
    "training": TRAINING,
    "tuning": tuning,
    "winner": winner,
    "runner_up": runner_up,
    "validation_margin_root_third": margin,
    "parameter_file": str(learned.PARAMETERS_FILE),
    "parameter_bytes": parameter_file.stat().st_size,
    "shipped_check": shipped_check,
    "key_check": keys,
    "hedge_frontier": hedges,
    "results": results,
    "seconds": time.time() - started,
}
write_json(OUT.with_suffix(".json"), report)

PLACES = {"bar": "bar lines", "middle": "middle beats", "beat": "other beats"}
NAMES = {
    "root_third": "root & third",
    "exact": "exact chord",
    "bar_changes": "changes at bar lines",
    "ctnctr": "CTnCTR ↑",
    "pcs": "PCS ↑",
    "mctd": "MCTD ↓",
    "che": "CHE",
    "cc": "CC",
    "ctd": "CTD",
}
lines = [
    "# Chords from a melody alone: learned harmonisers, the rule and the pianist",
    "",
    "Written by `.venv/bin/python results/harmonisation_validation.py` (with "
    "`results/harmonisation_validation.json`). Whole POP909 songs; fitted on the "
    f"{len(stored['splits']['train'])} training songs, decoding tuned and the winner chosen on the "
    f"{len(stored['splits']['validation'])} validation songs, reported on both and on the "
    f"{len(stored['splits']['test'])} test songs. "  # test: reported, not chosen on
    "Each cell: median over songs [25th–75th percentile].",
    "",
    "- *root & third*: share of annotated beats whose chord has the annotation's root and third "
    "(`harmony.beat_agreement`); *exact chord*: same pitch classes and bass as annotated; "
    "*changes at bar lines*: share of bar lines where the chord changes "
    "(`evaluation.harmonisation.bar_line_changes`).",
    "- Bars where the melody rests repeat the chords of the bars four bars away "
    "(`harmony.learned.loop_silent_bars`): the melody gives nothing to read there, and a pianist "
    "keeps the progression going.",
    "- CTnCTR, PCS, MCTD (melody against chords), CHE, CC, CTD (the progression): Yeh et al. (2020), "
    "as defined in `pianoacc_utils/evaluation/harmonisation.py` (CC counts distinct chords per song).",
    "- *pianist*: POP909's annotated chords; *rule*: `harmony.estimate_chords`; *hmm*, *softmax*, *mlp*: "
    "`harmony.fitting` kinds, decoded by `harmony.learned.harmonise`.",
    "",
    f"Vocabulary (qualities covering {fitting.VOCABULARY_COVERAGE:.0%} of the training songs' annotated "
    f"chord beats, on 12 roots): {', '.join(qualities)}.",
    "",
    "Annotated chords of the training songs hold from one beat to the next on "
    + ", ".join(
        f"{share:.0%} of {PLACES[place]}"
        for place, share in report["training_chord_held_share_by_place"].items()
    )
    + " (a middle beat: the middle of a bar of an even number of beats, 4 or more), so the transitions "
    "depend on the place in the bar.",
    "",
    f"Winner on validation (median root & third): **{winner}**, ahead of {runner_up} by "
    f"{margin * 100:.1f} points; its parameters are `{learned.PARAMETERS_FILE}` "
    f"({parameter_file.stat().st_size / 1024:.0f} KiB).",
    "",
]
for split in ("validation", "test"):
    lines += [
        f"## {split.capitalize()}",
        "",
        "| system | " + " | ".join(NAMES[c] for c in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for system in SYSTEMS:
        cells = []
        for column in COLUMNS:
            s = results[split][system][column]
            digits = 0 if column == "cc" else 3
            cells.append(f"{s['median']:.{digits}f} [{s['q25']:.{digits}f}–{s['q75']:.{digits}f}]")
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    lines.append("")
lines += [
    "## Is the key the limit?",
    "",
    f"The saved harmoniser ({winner}) reads the melody from its key's tonic (the relative major's). "
    "Given POP909's annotated key instead of the one estimated from the melody (median root & "
    "third over songs [25th–75th percentile]):",
    "",
    "| split | songs | same tonic as annotated | estimated key | annotated key |",
    "|---|---|---|---|---|",
]
for split, check in keys.items():
    cells = [
        f"{check[k]['median']:.3f} [{check[k]['q25']:.3f}–{check[k]['q75']:.3f}]"
        for k in ("estimated_key", "annotated_key")
    ]
    lines.append(
        f"| {split} | {check['songs']} | {check['same_tonic_share']:.0%} | " + " | ".join(cells) + " |"
    )
lines += [
    "",
    "## How far could hedging raise the chord-tone ratio?",
    "",
    "An accompaniment that plays the decoded chord is judged against the annotated one "
    "(`chord_tone_ratio`). Where the harmoniser is unsure (C major or A minor), playing only "
    "the pitch classes it is surest of (C and E) would lose less. For each beat with a "
    "sounding melody and an annotated chord: the share of the decoded chord's *k* surest "
    "pitch classes (by the forward-backward posterior that each is in the chord) that lie in "
    "the annotated chord; median over songs [25th–75th percentile]. That is the chord-tone "
    "ratio an accompaniment would have if it sounded those *k* pitch classes equally long and "
    "changed exactly with the chords (the models, playing whole chords with their voicing and "
    "rhythm, reach 0.65 on test segments: `results/evaluation_estimated_chords.md`). Playing "
    "fewer pitch classes helps, but even a single one per beat stays near 0.82.",
    "",
    "| split | 3 pitch classes | 2 | 1 |",
    "|---|---|---|---|",
]
for split, frontier in hedges.items():
    lines.append(
        f"| {split} | "
        + " | ".join(
            f"{frontier[k]['median']:.3f} [{frontier[k]['q25']:.3f}–{frontier[k]['q75']:.3f}]"
            for k in ("3", "2", "1")
        )
        + " |"
    )
lines += [
    "",
    "## Decoding settings tried on validation",
    "",
    "| harmoniser | emission scale | prior weight | median root & third |",
    "|---|---|---|---|",
]
for kind in KINDS:
    for scale, weight, value in tuning[kind]["grid"]:
        chosen = " (chosen)" if [scale, weight] == tuning[kind]["chosen"] else ""
        lines.append(f"| {kind}{chosen} | {scale} | {weight} | {value:.3f} |")
lines.append("")
write_atomic(OUT.with_suffix(".md"), "\n".join(lines).encode())
log("written " + ", ".join(str(OUT.with_suffix(s)) for s in (".json", ".md")))
sys.exit(0)
