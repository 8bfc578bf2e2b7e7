"""Train the reranker: a classifier of 2-bar windows, the pianist against the shipped models,
on whole songs of the *training* split.

    KERAS_BACKEND=jax .venv/bin/python results/reranker.py [--songs N]

Accompanies the first :data:`SONGS` whole songs of the training split as ``pianoacc
accompany`` does (default settings but one candidate per window: no reranking, seed 0)
with each system of :data:`SYSTEMS`, cuts the
pianist's, every system's, block chords' and the jittered pianist's accompaniment into the critic's 2-bar windows
(``generation.critic_features``), and fits gradient-boosted trees (:data:`TREES`) to tell
them apart. Its accuracy is measured first with 5 folds grouped by song; then it is fitted
on every window and written as arrays to ``pretrained/reranker/reranker.npz``
(``generation.rerank``), with ``results/reranker.json`` and ``.md``.

A second round (``--base FILE``) also learns from what reranking leaves: the first
:data:`ROUND_TWO_SONGS` training songs accompanied at the default number of candidates,
chosen by the reranker in ``FILE``, by each system of :data:`ROUND_TWO_SYSTEMS`; written
to ``--out`` (default the shipped file), its report to ``results/reranker_round2.json``
and ``.md``. Whether a
second round replaces the first is decided on validation
(``results/critic_rerank_rounds.py``).

It chooses nothing: its settings are the critic's trees with more of them, fixed
beforehand, and it sees no validation or test song. How many candidates it reranks is
chosen on validation (``results/critic_rerank.py``). Generation is cached as in
``results/critic_validation.py`` (about 2 s per song and system on two cores); the fit
takes under a minute.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from critic_validation import LEGACY_OVERLAP, accompany_songs, log, whole_songs  # noqa: E402

from pianoacc_utils.common import write_atomic, write_json  # noqa: E402
from pianoacc_utils.evaluation import block_chord_baseline, critic  # noqa: E402
from pianoacc_utils.generation.critic_features import feature_matrix, feature_names  # noqa: E402
from pianoacc_utils.generation import Reranker, TreeEnsemble, pretrained_dir  # noqa: E402
from pianoacc_utils.generation.rerank import RERANKER_FILE  # noqa: E402

DECIDES_ON = None
"""The split this script chooses on: none (it trains on the training split with fixed
settings); ``tests/test_project.py`` checks that no script chooses on the test split."""

SONGS = 128
"""Training songs accompanied (the first of the split's order): about 10,000 windows."""
SYSTEMS = {
    "fnet_melody_only": ("fnet", "estimated"),
    "transformer_melody_only": ("transformer", "estimated"),
    "fnet_lead_sheet": ("fnet", "annotated"),
}
"""The model windows it learns from: system name -> (shipped model, chords it is given).
Two kinds of windows no model made join them, so that the reranker does not take what it
never saw for a pianist: block chords on every beat of the annotated chords, and the
pianist's notes each moved by a sixteenth at random (the critic's controls, here on
training songs)."""
ROUND_TWO_SONGS = 48
"""Training songs accompanied again for a second round (each about 15 s per system at 8
candidates on two cores)."""
ROUND_TWO_SYSTEMS = {
    "fnet_melody_only_reranked": ("fnet", "estimated"),
    "transformer_melody_only_reranked": ("transformer", "estimated"),
}
"""The windows a second round adds: each model from the melody alone at the default
settings, candidates included, reranked by the first round (the tells reranking leaves)."""
TREES = dict(max_iter=200, learning_rate=0.1, max_leaf_nodes=15, early_stopping=False,
             class_weight="balanced", random_state=0)
"""``HistGradientBoostingClassifier`` settings: the critic's trees (200 instead of 100)
with the two classes weighted equally (a pianist's window against five others')."""
SHOWN = ("notes_per_beat", "notes_per_onset", "duration_median", "velocity_mean",
         "top_pitch", "bass_pitch")
"""Features whose mean per kind of window the report shows (what the critic has found to
give the models away: density, breaking of chords, length, loudness, register)."""
COMMAND = "KERAS_BACKEND=jax .venv/bin/python results/reranker.py"
OUT = Path(__file__).resolve().parent / "reranker"


def window_means(features: np.ndarray, counts: dict) -> dict[str, dict[str, float]]:
    """The mean of each :data:`SHOWN` feature over each kind of window (``counts`` gives the
    kinds in the order of ``features``' rows, as :func:`windows` returns them); a window
    without the feature (no note, so no duration) is left out of its mean."""
    columns = [feature_names().index(name) for name in SHOWN]
    means, first = {}, 0
    for name, count in counts.items():
        block = features[first : first + count][:, columns]
        means[name] = {f: round(float(v), 3) for f, v in zip(SHOWN, np.nanmean(block, axis=0))}
        first += count
    return means


def judged_by(checkpoint: str) -> str:
    """The command that judges ``checkpoint`` against the shipped model on validation: a
    run trained on in more keys (``runs/continued/``) by ``results/augmentation.py``, the
    scaling campaign's FNet ``l`` by ``results/larger_model.py``."""
    if Path(checkpoint).parts[:2] == ("runs", "continued"):
        return "results/augmentation.py --judge --songs 40"
    return "results/larger_model.py"


def model_systems(checkpoint: str) -> dict[str, tuple[str, str]]:
    """The windows a reranker for one model learns from in place of :data:`SYSTEMS`: that
    FNet checkpoint from the melody alone and with the annotated chords."""
    return {f"{name}_{Path(checkpoint).parent.name}": (checkpoint, chords)
            for name, chords in (("fnet_melody_only", "estimated"), ("fnet_lead_sheet", "annotated"))}


def windows(
    count: int, base: Path | None = None, systems: dict[str, tuple[str, str]] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Features, labels (1: the pianist) and songs of every window, and window counts;
    with ``base`` (a reranker's file), the second round's windows too; ``systems`` in
    place of :data:`SYSTEMS`."""
    systems = SYSTEMS if systems is None else systems
    songs = whole_songs(count, "train")
    log(f"{len(songs)} training songs, {sum(s.num_bars for s in songs)} bars")
    pieces = [critic.segment_piece(s) for s in songs]
    found, groups = critic.piece_windows(pieces, [p.pianist for p in pieces], 2)
    features, labels, counts = [feature_matrix(found)], [np.ones(len(found))], {"pianist": len(found)}
    rng = np.random.default_rng(0)
    others = {
        "block_chords": [block_chord_baseline(s) for s in songs],
        "pianist_jittered": [critic.jittered(p.pianist, rng) for p in pieces],
    }
    rounds = ROUND_TWO_SYSTEMS if base is not None else {}
    for name in [*systems, *others, *rounds]:
        used = pieces
        if name in systems:
            notes = accompany_songs(songs, "train", name, *systems[name],
                                   {"candidates": 1, "overlap_bars": LEGACY_OVERLAP})
        elif name in rounds:
            used = pieces[:ROUND_TWO_SONGS]
            notes = accompany_songs(songs[:ROUND_TWO_SONGS], "train", name, *rounds[name],
                                    {"overlap_bars": LEGACY_OVERLAP}, reranker=base)
        else:
            notes = others[name]
        cut, songs_of = critic.piece_windows(used, notes, 2)
        features.append(feature_matrix(cut))
        labels.append(np.zeros(len(cut)))
        groups += songs_of
        counts[name] = len(cut)
    return np.concatenate(features), np.concatenate(labels).astype(int), np.asarray(groups), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=SONGS, help=f"default {SONGS}")
    parser.add_argument("--base", type=Path, default=None,
                        help="a second round, over the first round's reranker in this file")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the trees (default: the shipped file)")
    parser.add_argument("--checkpoint", default=None,
                        help="learn from this FNet checkpoint's windows in place of the "
                             "shipped models' (write it with --out elsewhere)")
    args = parser.parse_args()
    if args.checkpoint is not None and args.out is None:
        parser.error("--checkpoint needs --out: the shipped reranker is the shipped models'")
    systems = SYSTEMS if args.checkpoint is None else model_systems(args.checkpoint)
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    features, labels, groups, counts = windows(args.songs, args.base, systems)
    began = time.time()
    model = HistGradientBoostingClassifier(**TREES)
    held_out = cross_val_predict(model, features, labels, groups=groups, cv=GroupKFold(5),
                                 method="predict_proba")[:, 1]
    accuracy = float(np.mean((held_out > 0.5) == labels))
    auc = float(roc_auc_score(labels, held_out))
    log(f"held-out songs: accuracy {accuracy:.3f}, AUC {auc:.3f}")
    model.fit(features, labels)
    reranker = Reranker(tuple(feature_names()), TreeEnsemble.from_sklearn(model))
    gap = float(np.max(np.abs(reranker.trees.decision(features) - model.decision_function(features))))
    shipped = pretrained_dir() / RERANKER_FILE
    path = args.out or shipped
    reranker.save(path)
    out = OUT if args.base is None else OUT.with_name("reranker_round2")
    if args.checkpoint is not None:  # one model's own reranker: its report beside the others
        out = OUT.with_name(f"reranker_{path.stem}")
    elif args.base is None and path.resolve() != shipped.resolve():
        out = path.with_suffix("")  # a first round elsewhere: the shipped one's report stays
    command = COMMAND
    if args.base is not None:
        command += f" --base {relative(args.base)}"
    if args.out is not None:
        command += f" --out {relative(args.out)}"
    if args.checkpoint is not None:
        command += f" --checkpoint {args.checkpoint}"
    report = {
        "command": command, "songs": args.songs, "systems": systems, "windows": counts,
        "trees": TREES, "held_out_accuracy": round(accuracy, 4), "held_out_auc": round(auc, 4),
        "nodes": int(len(reranker.trees.feature)), "numpy_against_sklearn": gap,
        "seconds": round(time.time() - began, 1), "file": relative(path),
        "means": window_means(features, counts),
    }
    if args.checkpoint is not None:
        report["checkpoint"] = args.checkpoint
    if args.base is not None:
        report.update(base=relative(args.base), round_two_songs=ROUND_TWO_SONGS,
                      round_two_systems=ROUND_TWO_SYSTEMS)
    write_json(out.with_suffix(".json"), report)
    write_atomic(out.with_suffix(".md"), markdown(report).encode())
    log(f"wrote {path} and {out}.json and .md")


def second_round(report: dict) -> str:
    """The sentence a second round's report adds: which windows it learned from besides."""
    names = ", ".join(f"{name} ({report['windows'][name]} windows)"
                      for name in report["round_two_systems"])
    return (
        f"; in a second round also from {names}: the first {report['round_two_songs']} of "
        "those songs accompanied at the default settings, the default number of candidates "
        f"included, each window chosen by the first round's reranker (`{report['base']}`)"
    )


def relative(path: Path) -> str:
    """``path`` relative to the checkout where it lies inside it (as a report names it)."""
    root = Path(__file__).resolve().parents[1]
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def means_table(means: dict | None) -> str:
    """The report's table of feature means per kind of window, the pianist's first, columns
    in :data:`SHOWN`'s order whatever the order of the report's keys ('' for reports
    without)."""
    if not means:
        return ""
    rows = ["| windows | " + " | ".join(SHOWN) + " |", "|---|" + "---|" * len(SHOWN)]
    rows += [f"| {name} | " + " | ".join(f"{means[name][f]:.3g}" for f in SHOWN) + " |"
             for name in sorted(means, key=lambda name: name != "pianist")]
    return ("Means over each kind of window (units: `generation.critic_features`; notes per "
            "beat, notes per onset, beats, MIDI velocity, MIDI pitch):\n\n"
            + "\n".join(rows) + "\n\n")


def markdown(report: dict) -> str:
    counts = report["windows"]
    return (
        "# The reranker\n\n"
        f"Written by `{report['command']}`; the trees are in `{report['file']}`.\n\n"
        f"Gradient-boosted trees over the critic's named features of 2-bar windows, trained to "
        f"tell the pianist ({counts['pianist']} windows) from "
        + ("the shipped models" if "checkpoint" not in report else
           f"one model, `{report['checkpoint']}`,") + " and two controls: "
        + ", ".join(f"{name} ({n} windows)" for name, n in counts.items()
                    if name != "pianist" and name not in report.get("round_two_systems", {}))
        + f" on the first {report['songs']} whole songs of the **training** split, accompanied "
        "at the default settings with one candidate per window (seed 0)"
        + (second_round(report) if "base" in report else "")
        + ". It sees no validation or test song.\n\n"
        "| measure, 5 folds grouped by song | value |\n|---|---|\n"
        f"| accuracy on held-out songs | {report['held_out_accuracy']:.3f} |\n"
        f"| AUC on held-out songs | {report['held_out_auc']:.3f} |\n\n"
        + means_table(report.get("means")) +
        f"{report['nodes']} tree nodes; the NumPy evaluation of `generation.rerank` differs "
        f"from scikit-learn's by at most {report['numpy_against_sklearn']:.1e} in log-odds. "
        + ("Whether it replaces the first round is decided on validation: "
           "`results/critic_rerank_rounds.md`.\n" if "base" in report else
           "Whether that model with this reranker would ship is decided on validation by "
           f"`{judged_by(report['checkpoint'])} --reranker {report['file']}`.\n"
           if "checkpoint" in report else
           "How many candidates it chooses among is decided on validation: "
           "`results/critic_rerank.md`.\n")
    )


if __name__ == "__main__":
    main()
